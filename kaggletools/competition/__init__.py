"""The plugin API: everything a competition module needs, from one stable import path.

    from kaggletools.competition import Competition, Recipe, register, layouts, fixtures
    from kaggletools.competition.bases import MultiClassLabel

`Competition` (the interface), `register` (the registry's decorator), `Recipe` (the default
recipe), the bases (`bases.MultiClassLabel`, ...), the tasks (`tasks.Binary()`, ...), the layouts
(where items live), the fixtures (generated downloads for tests and the demo) and `tags`
(multi-label tag rules and thresholds), `files` (writing filtered CSVs for `sample_files`),
`CompetitionError` and `SubmissionError`. The shared layer itself imports the submodules directly.
"""
from kaggletools.competition import bases, fixtures, layouts, tags, tasks
from kaggletools.competition.interface import Competition
from kaggletools.competition.registry import register
from kaggletools.errors import CompetitionError, SubmissionError
from kaggletools.io import files
from kaggletools.options import Recipe

__all__ = ["Competition", "Recipe", "register", "bases", "tasks", "layouts", "fixtures", "tags", "files",
           "CompetitionError", "SubmissionError"]
