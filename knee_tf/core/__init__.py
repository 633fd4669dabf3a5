"""The thin helper: everything the method needs, and nothing of the study around it.

* ``vocab`` class, plane, split, cohort, method and arm names; the decision rule; the CAM target check
* ``errors``, ``io`` one-line input errors; atomic writes
* ``startup`` what TensorFlow prints when it loads; Keras progress verbosity; inline figure size
* ``precision`` float32 or mixed bfloat16 training
* ``arrays`` ``tf.data`` pipelines over image arrays; pooled images; example picking
* ``model`` the LeNet, seeding, seeded training, inference
* ``cam_methods`` the registry of CAM methods (Grad-CAM, Grad-CAM++, LayerCAM): one weight function each
* ``cam`` the engine they share: maps at several layers and methods in one pass
* ``faithfulness`` deletion and insertion curves
* ``augment`` map-guided augmentation: mask -> image transforms and the augmented pool

Imports no other wing: ``import knee_tf.core`` loads none of the study's heavier dependencies.
"""
