"""The only code that touches the kernel: /sys, /dev and /proc, through one boundary
(:mod:`hostdev.linux.sysfs`). Nothing here knows about owners or lists.
"""
