"""Kaggle through its official client: credentials, the client made safe, competition verbs, downloads."""
