"""The plan's test modules, shipped in the package; the plugin collects them when an inventory is given."""
