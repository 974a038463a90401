"""The auditor's console (/console): server-rendered HTML over the use cases."""
