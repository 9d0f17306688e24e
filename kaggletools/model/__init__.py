"""The network: backbone names and builders (torchvision, timm), the head, the device and precision, torch.distributed."""
