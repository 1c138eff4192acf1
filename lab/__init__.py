"""asgi-lab: measure ASGI servers with real processes and honest numbers."""
