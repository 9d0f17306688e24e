"""Safe, bounded, atomic, idempotent unpacking of downloads: zip, tar, 7z, nested."""
