"""kaggletools: from a Kaggle image competition's download to a validated submission."""

__version__ = "0.1.0"
