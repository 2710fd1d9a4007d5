"""Instructor widgets (ipywidgets) for the notebooks.

Rule: every widget's callback is a plain library function that the notebook also calls once
without the widget, so papermill exercises the same code the slider runs.
"""
