"""The lab's OpenNebula stand-in (docs/standin.md): the daemon shipped in stand-in
packages (oned.py and its one*.py modules, httpstub.py) and the builder of their apt
repository (packages.py)."""
