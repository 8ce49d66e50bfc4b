"""What hostdev remembers: records, the two lists, the state file, the intent journal,
and the one checked reader and atomic writer they share. Never writes the kernel.
"""
