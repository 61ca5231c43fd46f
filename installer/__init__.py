"""onehci: blank servers to an OpenNebula cloud on MooseFS."""

__version__ = "0.1.0"
