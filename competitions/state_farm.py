"""State Farm Distracted Driver Detection (Kaggle, 2016): dashboard photos of drivers, ten
behaviours. `imgs.zip` holds `train/<class>/img_<n>.jpg` (c0 ... c9) and `test/img_<n>.jpg`;
`driver_imgs_list.csv` (`subject,classname,img`) names the driver of each training photo. The
submission is `img` then one probability column per class, scored by multi-class log loss.

Validation is by driver (`group_column = "subject"`): the photos of one driver are frames of one
video, so a driver on both sides of a split scores far better than on the test set's new drivers.
The recipe turns flips off: a mirrored photo swaps right and left hands (c1 and c3, c2 and c4).
It was not tuned on real images (none are available offline here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.competition import CompetitionError, Recipe, fixtures, layouts, register
from kaggletools.competition.bases import MultiClassLogLoss

CLASSES = tuple(f"c{i}" for i in range(10))
BEHAVIOURS = ("safe driving", "texting - right", "talking on the phone - right", "texting - left",
              "talking on the phone - left", "operating the radio", "drinking", "reaching behind",
              "hair and makeup", "talking to passenger")
DRIVERS, SAMPLE = "driver_imgs_list.csv", "sample_submission.csv"


@register("state-farm-distracted-driver-detection", "state-farm")
class StateFarm(MultiClassLogLoss):
    title = "State Farm Distracted Driver Detection"
    classes = CLASSES
    files = ("imgs.zip", DRIVERS, SAMPLE)
    id_column = "img"
    group_column = "subject"
    recipe = Recipe(backbone="resnet34", size=224, freeze_epochs=1, epochs=3, lr=2e-3, min_scale=0.6,
                    flip=False, max_shift=0.05, tta="none")
    demo = {"flip": False, "tta": "none"}

    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        folder = self._images(Path(data_dir))
        if split != "train":
            return layouts.unlabelled(data_dir, f"{folder}test", keep_suffix=True)
        table = layouts.labelled_by_folder(data_dir, f"{folder}train", self.classes)
        path = Path(data_dir) / DRIVERS
        drivers = layouts.read_csv(path, ("subject", "classname", "img")).set_index("img")
        drivers = drivers[~drivers.index.duplicated()]
        missing = table["id"][~table["id"].isin(drivers.index)]
        if len(missing):
            raise CompetitionError(f"{path} has no row for {len(missing)} training image(s), e.g. {list(missing[:3])}; "
                                   "download the driver list that belongs to these images")
        row = drivers.loc[table["id"]]
        wrong = (row["classname"].to_numpy() != table["label"].to_numpy())
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise CompetitionError(f"{path}: {table['id'].iloc[i]} is in class folder {table['label'].iloc[i]} but "
                                   f"listed as {row['classname'].iloc[i]} ({int(wrong.sum())} such rows); use the "
                                   "driver list that belongs to these images")
        table["subject"] = row["subject"].str.strip().to_numpy()
        table.attrs["labels"] = {"file": DRIVERS, "id_column": "img"}  # `sample` cuts the driver list
        return table

    @staticmethod
    def _images(data_dir: Path) -> str:
        """'' when imgs.zip unpacked train/ and test/ into the folder, 'imgs/' when into imgs/."""
        return "imgs/" if (data_dir / "imgs" / "train").is_dir() and not (data_dir / "train").is_dir() else ""

    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> pd.DataFrame:
        """Kaggle's download in miniature: `<slug>.zip` holding imgs.zip (train/<class>/img_<n>.jpg,
        test/img_<n>.jpg), driver_imgs_list.csv and sample_submission.csv; twelve drivers, each
        photographed in every behaviour in turn on a tint of their own, each behaviour drawn as its
        own shape and colour."""
        rng = np.random.default_rng(seed)
        drivers = [f"p{n:03d}" for n in sorted(rng.choice(np.arange(2, 90), 12, replace=False))]
        subject = np.arange(n_train) * len(drivers) // max(n_train, 1)  # consecutive photos: one driver
        labels = np.concatenate([(np.arange(n_train) + 3 * subject) % len(CLASSES),
                                 fixtures.balanced_labels(n_test, len(CLASSES), rng)])
        tint = {d: tuple(int(v) for v in rng.integers(50, 120, 3)) for d in range(len(drivers))}
        names = [f"img_{n}.jpg" for n in rng.permutation(np.arange(1, 10 * (n_train + n_test)))[: n_train + n_test]]
        jpeg = [fixtures.encode(fixtures.class_image(int(k), len(CLASSES), rng, background=tint.get(
            subject[i] if i < n_train else int(rng.integers(len(drivers))), (80, 80, 80))))
            for i, k in enumerate(labels)]
        images = {f"train/{CLASSES[labels[i]]}/{names[i]}": jpeg[i] for i in range(n_train)}
        images.update({f"test/{names[i]}": jpeg[i] for i in range(n_train, n_train + n_test)})
        listing = pd.DataFrame({"subject": [drivers[s] for s in subject],
                                "classname": [CLASSES[k] for k in labels[:n_train]], "img": names[:n_train]})
        test = names[n_train:]
        onehot = np.eye(len(CLASSES))[labels[n_train:]]
        answers = pd.concat([pd.DataFrame({"img": test}), pd.DataFrame(onehot, columns=list(CLASSES))], axis=1)
        sample = answers.assign(**{c: 0.1 for c in CLASSES})
        fixtures.write_zip(Path(folder) / f"{self.slug}.zip", {
            "imgs.zip": fixtures.zip_bytes(images),
            DRIVERS: listing.to_csv(index=False).encode(),
            SAMPLE: sample.to_csv(index=False).encode()})
        return answers
