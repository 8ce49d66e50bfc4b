"""Command implementations behind ``hostdev.cli`` (imported lazily, one module per area)."""
