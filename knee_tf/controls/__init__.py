"""What B's gain is compared with: control arms at the same budget, the grid that trains them, and effects.

* ``arms`` the one table of arms: how each builds its training set, its role, reference, seeds and panel
* ``control_masks`` the control arms' masks and pools (random placement, untrained maps, erasing, keep)
* ``grid`` jobs of (arm, seed, settings), in this process or on Dask
* ``publish`` finished jobs into ``results/grid/`` as they come
* ``prediction_store`` every model's per-image predictions in one table
* ``effects`` effects against a reference with two-level (seed x patient) intervals
* ``prescription`` the per-exam-plane prescription endpoint
* ``summary``, ``figures``, ``markdown_tables``, ``readme`` notebook 07's tables, figures, Markdown and README passages
"""
