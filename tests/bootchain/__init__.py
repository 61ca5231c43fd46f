"""Boot-chain tests: real firmware (SeaBIOS, OVMF) network-booting qemu VMs (TCG) against dnsmasq."""
