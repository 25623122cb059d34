"""The teaching layer: the textbook experiments, a tiny NumPy training harness, the digest's
worked numbers, plots and the atlas page. Uses the losses and tools; nothing below uses it.

``experiments``  saturation (MSE vs cross-entropy after a sigmoid), convexity, comparisons
``training``     a softmax classifier on scikit-learn's digits, trained with any loss
``digest``       the worked numbers of the source tutorials, checked
``plots``        matplotlib figures (imported only when a plot is drawn)
``atlas``        one self-contained HTML page of every loss and experiment
"""
