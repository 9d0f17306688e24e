"""The loop's steps over the rooms below: train into a run folder, predict from one, check, blend, the demo."""
