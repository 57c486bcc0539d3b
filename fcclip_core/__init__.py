"""FC-CLIP open-vocabulary segmentation, free of any ROS dependency.

The model, its vocabulary handling, checkpoint loading, post-processing and the
``Predictor`` API live here so they can be used and tested without ROS.
"""
