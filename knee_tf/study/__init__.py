"""The paper's experiment on a run folder: settings, cohorts, statistics, figures and the notebook pipeline.

* ``config`` ``StudyConfig``: the one source of settings; ``config_doc`` its fields listed with their meanings
* ``cohorts`` the table of test cohorts: what each is, how its images are made, the order tables show them in
* ``experiment`` Model A's maps -> augmented pool; predictions of A and B on the cohorts
* ``corrupt`` held-out acquisition corruptions and cohort 3
* ``baseline``, ``evaluate``, ``report`` the linear difficulty check; statistics; Markdown beside the paper
* ``plots`` the study's figures and ``savefig``
* ``pipeline`` notebooks 01-07 executed into a run folder, resumably; publishing
* ``session`` a notebook's one setup call: run folder, config, seed and images as a ``Study``
* ``html`` a run's executed notebooks as static pages
"""
