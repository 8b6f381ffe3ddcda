"""A tiny mmengine Runner (a linear model on 4 samples) and process ids for the engine tests."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset


class ToyModel(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        outputs = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=((outputs.squeeze(1) - torch.stack(targets)) ** 2).mean())
        return outputs


class ToyDataset(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=torch.full((2,), float(index)), targets=torch.tensor(float(index)))


class ToyMetric(BaseMetric):
    """The mean prediction, as a metric."""

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(float(sample) for sample in data_samples)

    def compute_metrics(self, results: list) -> dict:
        return dict(mean=sum(results) / len(results))


def toy_test_options() -> dict:
    """The Runner arguments that let a toy Runner ``test()`` (and ``val()``)."""
    loader = dict(
        dataset=ToyDataset(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        num_workers=0,
    )
    return dict(
        test_dataloader=loader,
        test_cfg=dict(),
        test_evaluator=[ToyMetric()],
        val_dataloader=loader,
        val_cfg=dict(),
        val_evaluator=[ToyMetric()],
    )


def toy_runner(
    work_dir: Path, checkpoint_hook: dict, max_iters: int = 2, name: str = '', **options
) -> Runner:
    """A Runner training ``max_iters`` iterations of :class:`ToyModel` in ``work_dir``.

    Args:
        work_dir (Path): Where its logs and checkpoints go.
        checkpoint_hook (dict): ``default_hooks.checkpoint``.
        max_iters (int): Iterations. Defaults to 2.
        name (str): Suffix of the experiment name (unique per Runner). Defaults to ''.
        **options: More Runner arguments, e.g. ``resume=True``.
    """
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
        ),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=2),
        default_hooks=dict(checkpoint=checkpoint_hook),
        experiment_name=f'fdconv_mm_test_{work_dir.name}{name}',
        default_scope=None,  # a scope would stay current and steer later tests' registries
        **options,
    )


@pytest.fixture(scope='session')
def make_toy_runner():
    """:func:`toy_runner`, for the tests."""
    return toy_runner


@pytest.fixture
def toy_tests():
    """:func:`toy_test_options`, for the tests."""
    return toy_test_options()


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, '-c', ''])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid():
    """The id of a running process, stopped after the test."""
    process = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    yield process.pid
    process.kill()
    process.wait()
