"""Teaching: the classroom tour, its self-check exercises and the live explorers of notebooks 03 and 04.

* ``tour`` runs ``notebooks/00_tour`` into a run folder
* ``exercises`` the tour's self-check cells
* ``explore`` Grad-CAM per layer and map-guided augmentation, live
"""
