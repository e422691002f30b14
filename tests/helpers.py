"""Small models and loaders shared by several test modules."""
import torch
from torch import nn

from kdutils.core import data
from kdutils.core.loader import GpuLoader


class CountingTeacher(nn.Module):
    """A tiny linear 'teacher' that counts its forward passes."""

    def __init__(self, side=8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, 10))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return 3.0 * self.net(x)


def tiny_loader(n=40, side=8, seed=0, batch_size=16):
    x, y = data.synthetic_images(n, 10, size=(side, side), seed=1)
    return GpuLoader((torch.from_numpy(x), torch.from_numpy(y).long()), batch_size, train=True, padding=2,
                     flip=True, device="cpu", seed=seed)


def tiny_student(side=8):
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * side * side, 10))
