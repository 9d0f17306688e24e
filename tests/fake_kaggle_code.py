"""The loopback Kaggle stand-in (fake_kaggle.FakeKaggle) taught the RPCs of Kaggle's notebooks,
datasets, code submissions and competition listing, as kagglesdk sends them:

    ListCompetitions, SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput,
    StartBlobUpload (then PUT <createUrl>), GetDatasetStatus, CreateDataset, CreateDatasetVersion,
    CreateCodeSubmission

Use: ``code = KaggleCode(server)`` on a started server (``fake_kaggle`` / ``kaggle_server``); then
``code.kernels``, ``code.datasets`` show what was pushed and uploaded, ``code.finish(ref, files,
status)`` sets a notebook's run state and output files. Output files are served through the
server's blob route, under a pseudo-competition named ``kernel--<owner>--<slug>``."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from fake_kaggle import FakeKaggle, _Fail

COMPETITIONS = [  # what ListCompetitions serves: (slug, title, category, teams)
    ("titanic", "Titanic - Machine Learning from Disaster", "Getting Started", 15000),
    ("dogs-vs-cats-redux-kernels-edition", "Dogs vs. Cats Redux: Kernels Edition", "Playground", 1314),
    ("aerial-cactus-identification", "Aerial Cactus Identification", "Playground", 1221),
    ("digit-recognizer", "Digit Recognizer", "Getting Started", 1500),
    ("rsna-2024-lumbar-spine", "RSNA 2024 Lumbar Spine Degenerative Classification", "Featured", 1874),
]


@dataclass
class Kernel:
    ref: str
    metadata: dict
    versions: list[dict] = field(default_factory=list)
    status: str = "RUNNING"
    failure: str = ""
    outputs: dict[str, bytes] = field(default_factory=dict)
    log: str = ""


class KaggleCode:
    def __init__(self, server: FakeKaggle, competitions=COMPETITIONS):
        self.server, self.listing = server, list(competitions)
        self.kernels: dict[str, Kernel] = {}
        self.datasets: dict[str, dict] = {}  # ref -> {"request": ..., "versions": [..], "files": {name: bytes}}
        self.code_submissions: list[dict] = []
        self._ids = itertools.count(1)
        server.routes.update({
            "ListCompetitions": self.list_competitions, "SaveKernel": self.save_kernel,
            "GetKernelSessionStatus": self.kernel_status, "ListKernelSessionOutput": self.kernel_output,
            "StartBlobUpload": self.start_upload, "GetDatasetStatus": self.dataset_status,
            "CreateDataset": self.create_dataset, "CreateDatasetVersion": self.create_version,
            "CreateCodeSubmission": self.code_submission,
        })

    # -- competitions --------------------------------------------------------------------------
    def list_competitions(self, body: dict, origin: str) -> dict:
        search = str(body.get("search") or "").lower()
        rows = [r for r in self.listing if search in r[0]]  # slugs only, to keep tests predictable
        size = int(body.get("pageSize") or 20)
        page = int(body.get("page") or 1) if not body.get("pageToken") else int(body["pageToken"])
        chunk = rows[(page - 1) * size:page * size]
        out = {"competitions": [{"id": i + 1, "ref": f"https://www.kaggle.com/competitions/{slug}", "title": title,
                                 "category": cat, "reward": "Knowledge", "teamCount": teams,
                                 "deadline": "2030-01-01T00:00:00Z", "userHasEntered": slug == self.server.slug}
                                for i, (slug, title, cat, teams) in enumerate(chunk)]}
        if page * size < len(rows):
            out["nextPageToken"] = str(page + 1)
        return out

    # -- notebooks -----------------------------------------------------------------------------
    def _kernel(self, body: dict) -> Kernel:
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        if ref not in self.kernels:
            raise _Fail(404, f"Notebook not found: {ref}")
        return self.kernels[ref]

    def save_kernel(self, body: dict, origin: str) -> dict:
        ref = body.get("slug") or ""
        if "/" not in ref:
            raise _Fail(400, "A notebook slug owner/slug is required")
        for source in body.get("competitionDataSources") or []:
            if source not in self.server.competitions and source not in {r[0] for r in self.listing}:
                raise _Fail(400, f"Unknown competition source: {source}")
        for source in body.get("datasetDataSources") or []:
            if source not in self.datasets:
                raise _Fail(400, f"Unknown dataset source: {source}")
        kernel = self.kernels.setdefault(ref, Kernel(ref, body))
        kernel.metadata = body
        kernel.versions.append(body)
        kernel.status = "QUEUED" if body.get("kernelExecutionType") != "QUICK_SAVE" else "COMPLETE"
        return {"ref": f"/code/{ref}", "url": f"https://www.kaggle.com/code/{ref}",
                "versionNumber": len(kernel.versions)}

    def finish(self, ref: str, files: dict[str, bytes], status: str = "COMPLETE", failure: str = "",
               log: str = "") -> None:
        """End the notebook's run: its state and the files its output holds."""
        kernel = self.kernels[ref]
        kernel.status, kernel.failure, kernel.outputs, kernel.log = status, failure, dict(files), log
        self.server.add_competition("kernel--" + ref.replace("/", "--"), files)

    def kernel_status(self, body: dict, origin: str) -> dict:
        kernel = self._kernel(body)
        return {"status": kernel.status, **({"failureMessage": kernel.failure} if kernel.failure else {})}

    def kernel_output(self, body: dict, origin: str) -> dict:
        kernel = self._kernel(body)
        key = "kernel--" + kernel.ref.replace("/", "--")
        return {"files": [{"fileName": name, "url": f"{origin}/blobs/download/{key}/{name}"}
                          for name in sorted(kernel.outputs)], "log": kernel.log}

    # -- datasets --------------------------------------------------------------------------------
    def start_upload(self, body: dict, origin: str) -> dict:
        token = f"blob-{next(self._ids)}"
        self.server._pending_uploads[token] = dict(body)
        return {"token": token, "createUrl": f"{origin}/upload/{token}"}

    def dataset_status(self, body: dict, origin: str) -> dict:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            raise _Fail(404, f"Dataset not found: {ref}")
        return {"status": "READY"}

    def _files(self, files: list) -> dict[str, bytes]:
        out = {}
        for f in files or []:
            token = f.get("token", "")
            if token not in self.server.uploads:
                raise _Fail(400, f"Unknown or incomplete upload: {token}")
            out[self.server._pending_uploads[token].get("name", token)] = self.server.uploads[token]
        return out

    def create_dataset(self, body: dict, origin: str) -> dict:
        ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
        if ref in self.datasets:
            return {"error": f"The requested slug {body.get('slug')!r} is already in use"}
        self.datasets[ref] = {"request": body, "versions": [], "files": self._files(body.get("files"))}
        return {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok"}

    def create_version(self, body: dict, origin: str) -> dict:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            raise _Fail(404, f"Dataset not found: {ref}")
        inner = body.get("body") or {}
        self.datasets[ref]["versions"].append(inner)
        self.datasets[ref]["files"] = self._files(inner.get("files"))
        return {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok"}

    # -- code competitions -----------------------------------------------------------------------
    def code_submission(self, body: dict, origin: str) -> dict:
        self.code_submissions.append(body)
        return {"message": "Your submission was queued", "ref": 4242}
