"""What B's gain is compared with: control arms at the same budget, the grid that trains them, and effects.

* ``arms`` the registry of arms: how each builds its training set
* ``control_masks`` the control arms' masks and pools (random placement, untrained maps, erasing, keep)
* ``grid`` jobs of (arm, seed, settings), in this process or on Dask
* ``publish`` finished jobs into ``results/grid/`` as they come
* ``prediction_store`` every model's per-image predictions in one table
* ``effects`` effects against a reference with two-level (seed x patient) intervals
* ``prescription`` the per-exam-plane prescription endpoint
* ``summary``, ``figures``, ``markdown_tables`` notebook 07's tables, figures and Markdown
* ``results_page`` README's headline table and the docs pages' tables, generated from ``results/``
"""
