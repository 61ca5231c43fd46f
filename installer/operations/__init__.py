"""Day-2 operations (rebuild, add-node, recover-master, upgrade): each a fixed list of steps run
through installer/journal.py, built from the pieces in this package."""
