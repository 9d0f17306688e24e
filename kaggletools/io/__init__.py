"""Files in and out: images decoded as a viewer shows them, small file helpers, atomic figures, and where things go (cache, work folders)."""
