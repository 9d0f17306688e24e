"""Dog Breed Identification (Kaggle playground, 2017; fast.ai's 2018 lesson 2): 120 breeds from
Stanford Dogs. `labels.csv` names each training image's breed (`id,breed`, ids of 32 hexadecimal
characters, images `train/<id>.jpg`); the test images are `test/<id>.jpg`. The submission is `id`
then one probability column per breed in the sample submission's (alphabetical) order, scored by
multi-class log loss: Kaggle rescales each row to sum 1 and clips to [1e-15, 1 - 1e-15].

The recipe was not tuned on real images (none are available offline here): resnet50 at 224 with
3 frozen and 2 unfrozen epochs, as fast.ai's lesson trained its head longest; its images come from
ImageNet, so ImageNet weights carry most of the work.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.competition import Recipe, fixtures, layouts, register
from kaggletools.competition.bases import MultiClassLogLoss

BREEDS = tuple("""
affenpinscher afghan_hound african_hunting_dog airedale american_staffordshire_terrier appenzeller
australian_terrier basenji basset beagle bedlington_terrier bernese_mountain_dog black-and-tan_coonhound
blenheim_spaniel bloodhound bluetick border_collie border_terrier borzoi boston_bull bouvier_des_flandres
boxer brabancon_griffon briard brittany_spaniel bull_mastiff cairn cardigan chesapeake_bay_retriever
chihuahua chow clumber cocker_spaniel collie curly-coated_retriever dandie_dinmont dhole dingo doberman
english_foxhound english_setter english_springer entlebucher eskimo_dog flat-coated_retriever french_bulldog
german_shepherd german_short-haired_pointer giant_schnauzer golden_retriever gordon_setter great_dane
great_pyrenees greater_swiss_mountain_dog groenendael ibizan_hound irish_setter irish_terrier
irish_water_spaniel irish_wolfhound italian_greyhound japanese_spaniel keeshond kelpie kerry_blue_terrier
komondor kuvasz labrador_retriever lakeland_terrier leonberg lhasa malamute malinois maltese_dog
mexican_hairless miniature_pinscher miniature_poodle miniature_schnauzer newfoundland norfolk_terrier
norwegian_elkhound norwich_terrier old_english_sheepdog otterhound papillon pekinese pembroke pomeranian pug
redbone rhodesian_ridgeback rottweiler saint_bernard saluki samoyed schipperke scotch_terrier
scottish_deerhound sealyham_terrier shetland_sheepdog shih-tzu siberian_husky silky_terrier
soft-coated_wheaten_terrier staffordshire_bullterrier standard_poodle standard_schnauzer sussex_spaniel
tibetan_mastiff tibetan_terrier toy_poodle toy_terrier vizsla walker_hound weimaraner welsh_springer_spaniel
west_highland_white_terrier whippet wire-haired_fox_terrier yorkshire_terrier""".split())
LABELS, SAMPLE = "labels.csv", "sample_submission.csv"


@register("dog-breed-identification", "dog-breeds", "dogbreeds")
class DogBreeds(MultiClassLogLoss):
    title = "Dog Breed Identification"
    classes = BREEDS
    files = ("train.zip", "test.zip", LABELS, SAMPLE)
    recipe = Recipe(backbone="resnet50", size=224, freeze_epochs=3, epochs=2, lr=2e-3, min_scale=0.5, tta="flip")
    demo = {"freeze_epochs": 3, "lr": 1e-2}  # a 120-way head needs more steps than the demo's default

    def items(self, data_dir: Path, split: str) -> pd.DataFrame:
        if split == "train":
            return layouts.labelled_by_csv(data_dir, LABELS, "train", "id", "breed")
        return layouts.unlabelled(data_dir, "test")

    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> pd.DataFrame:
        """Kaggle's all-files download in miniature: `dog-breed-identification.zip` holding train.zip,
        test.zip, labels.csv.zip and sample_submission.csv.zip; four breeds, each drawn as its own
        shape and colour."""
        rng = np.random.default_rng(seed)
        breeds = [BREEDS[i] for i in (3, 40, 77, 110)]
        ids = fixtures.hex_ids(n_train + n_test, rng)
        labels = fixtures.balanced_labels(n_train + n_test, len(breeds), rng)
        image = {i: fixtures.encode(fixtures.class_image(int(k), len(breeds), rng)) for i, k in zip(ids, labels)}
        train, test = ids[:n_train], ids[n_train:]
        onehot = np.zeros((n_test, len(BREEDS)))
        onehot[np.arange(n_test), [BREEDS.index(breeds[k]) for k in labels[n_train:]]] = 1.0
        answers = pd.concat([pd.DataFrame({"id": test}), pd.DataFrame(onehot, columns=list(BREEDS))], axis=1)
        sample = answers.assign(**{b: 1 / len(BREEDS) for b in BREEDS})
        text = pd.DataFrame({"id": train, "breed": [breeds[k] for k in labels[:n_train]]}).to_csv(index=False)
        fixtures.write_zip(Path(folder) / f"{self.slug}.zip", {
            "train.zip": fixtures.zip_bytes({f"train/{i}.jpg": image[i] for i in train}),
            "test.zip": fixtures.zip_bytes({f"test/{i}.jpg": image[i] for i in test}),
            f"{LABELS}.zip": fixtures.zip_bytes({LABELS: text.encode()}),
            f"{SAMPLE}.zip": fixtures.zip_bytes({SAMPLE: sample.to_csv(index=False).encode()})})
        return answers
