"""Python scripts that run on the checked hosts (standard library only, Python 3.6+).

They are sent over the connection's standard input, never written to the host's disk, and each prints one
JSON document on its last line of output.
"""
