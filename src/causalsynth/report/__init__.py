"""``causalsynth report``: one self-contained HTML file of a dataset, and its charts.
"""
