"""What B's gain is compared with: control arms at the same budget, the grid that trains them, and effects.

* ``arms`` the one table of arms: how each builds its training set, its role, reference, seeds and panel
* ``control_masks`` the control arms' masks and pools (random placement, untrained maps, erasing, keep)
* ``jobs`` what one job of (arm, seed, settings) is, and the jobs a study plans
* ``training_job`` one job: train one model, score it, its files in the run folder
* ``grid`` run many jobs, in this process or on Dask
* ``cross`` predictions on the cohorts made from other jobs' models (``cam_transfer``, ``cam_b``)
* ``publish`` finished jobs into ``results/grid/``; ``grid_publisher`` does it as a grid's jobs finish
* ``prediction_store`` every model's per-image predictions in one table
* ``effects`` effects against a reference, one table row per comparison and condition
* ``effect_stats`` their statistics: two-level (seed x patient) bootstrap, sign-flip test, Benjamini-Hochberg
* ``prescription`` the per-exam-plane prescription endpoint
* ``summary``, ``figures``, ``markdown_tables`` notebook 07's tables, figures and Markdown
* ``results_page`` README's headline table and the docs pages' tables, generated from ``results/``
"""
