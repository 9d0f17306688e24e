"""Training: the one loop (learner.py), schedules, precomputed features, the LR finder, test-time augmentation."""
