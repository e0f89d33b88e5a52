"""VOD assets and their public visibility."""
