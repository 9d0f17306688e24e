"""Iterative stratification of multi-label data (Sechidis, Tsoumakas and Vlahavas, "On the
Stratification of Multi-Label Data", ECML PKDD 2011), as the package iterative-stratification
(`iterstrat`, version 0.1.9) implements it for MultilabelStratifiedKFold and
MultilabelStratifiedShuffleSplit: the same algorithm and the same random draws, so the same
seed gives the same folds and splits. Vendored because that package also installs a stray
top-level `tests` package into site-packages.

Adapted from iterstrat/ml_stratifiers.py by Trent J. Bradberry, under this license:

    BSD 3-Clause License

    Copyright (c) 2018, Trent J. Bradberry
    All rights reserved.

    Redistribution and use in source and binary forms, with or without
    modification, are permitted provided that the following conditions are met:

    * Redistributions of source code must retain the above copyright notice, this
      list of conditions and the following disclaimer.

    * Redistributions in binary form must reproduce the above copyright notice,
      this list of conditions and the following disclaimer in the documentation
      and/or other materials provided with the distribution.

    * Neither the name of the copyright holder nor the names of its
      contributors may be used to endorse or promote products derived from
      this software without specific prior written permission.

    THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
    AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
    IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
    DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
    FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
    DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
    SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
    CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
    OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
    OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""
from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[1] < 2 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"iterative stratification needs an (n, k >= 2) 0/1 tag matrix, got shape {y.shape}")
    return y.astype(bool)


def stratify(labels: np.ndarray, r: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """The subset (0..len(r)-1) of each item: subset j receives the share r[j] of the items and
    of each tag's items; the rarest tag is placed first, ties broken at random."""
    n_samples = labels.shape[0]
    test_folds = np.zeros(n_samples, dtype=int)
    c_folds = r * n_samples                            # items each subset still wants
    c_folds_labels = np.outer(r, labels.sum(axis=0))   # items of each tag each subset still wants
    not_processed = np.ones(n_samples, dtype=bool)

    while np.any(not_processed):
        num_labels = labels[not_processed].sum(axis=0)
        if num_labels.sum() == 0:  # only items without tags left: spread them as evenly as possible
            for sample_idx in np.where(not_processed)[0]:
                fold_idx = np.where(c_folds == c_folds.max())[0]
                fold_idx = fold_idx[random_state.choice(fold_idx.shape[0])] if fold_idx.shape[0] > 1 else fold_idx[0]
                test_folds[sample_idx] = fold_idx
                c_folds[fold_idx] -= 1
            break
        label_idx = np.where(num_labels == num_labels[np.nonzero(num_labels)].min())[0]
        if label_idx.shape[0] > 1:
            label_idx = label_idx[random_state.choice(label_idx.shape[0])]
        for sample_idx in np.where(np.logical_and(labels[:, label_idx].flatten(), not_processed))[0]:
            # the subset wanting most items of this tag; ties: the one wanting most items, then at random
            label_folds = c_folds_labels[:, label_idx]
            fold_idx = np.where(label_folds == label_folds.max())[0]
            if fold_idx.shape[0] > 1:
                temp = np.where(c_folds[fold_idx] == c_folds[fold_idx].max())[0]
                if temp.shape[0] > 1:
                    fold_idx = fold_idx[temp][random_state.choice(temp.shape[0])]
                else:
                    fold_idx = fold_idx[temp[0]]
            else:
                fold_idx = fold_idx[0]
            test_folds[sample_idx] = fold_idx
            not_processed[sample_idx] = False
            c_folds_labels[fold_idx, labels[sample_idx]] -= 1
            c_folds[fold_idx] -= 1
    return test_folds


def kfold(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold ids 0..k-1, as MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)."""
    y = _check(labels)
    if not 2 <= k <= len(y):
        raise ValueError(f"cannot make {k} folds of {len(y)} items")
    rng = np.random.RandomState(seed)
    indices = np.arange(len(y))
    rng.shuffle(indices)
    folds = stratify(y[indices], np.asarray([1 / k] * k), rng)
    return folds[np.argsort(indices)]


def shuffle_split(labels: np.ndarray, n_test: int, seed: int,
                  n_train: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, as MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_test,
    train_size=n_train, random_state=seed): the sizes are shares, met approximately."""
    y = _check(labels)
    n = len(y)
    n_train = n - n_test if n_train is None else n_train
    if n_test < 1 or n_train < 1 or n_train + n_test > n:
        raise ValueError(f"cannot split {n} items into {n_train} and {n_test}")
    rng = np.random.RandomState(seed)
    indices = np.arange(n)
    rng.shuffle(indices)
    folds = stratify(y[indices], np.array([n_train, n_test]) / (n_train + n_test), rng)
    test = folds[np.argsort(indices)] == 1
    return np.where(~test)[0], np.where(test)[0]
