"""The app's figures, one module per subject. Pure functions of a run's data: no Streamlit here.

    base               font, sizes, layout, every colour scale, tokens as axis labels, presentation-mode text
    maps               attention heatmaps: teacher | student | difference, maps side by side, head grids
    curves             over epochs: validation accuracy, the training losses, loss weights and temperature
    divergence         divergence from the teacher per layer pair, the layer pair x head grid, layer-mapping costs
    accuracy           test accuracy with its uncertainty, difference from the reference, costs, robustness
    compare            two runs or two students side by side
    attribution        token attributions of the teacher and a student
    sweep              a sweep across seeds
    compression        the Compression page (quantised and pruned versions)
    images             the image explorer: maps drawn over a picture
    image_attribution  pixel attributions over a picture, and the readers of an image run's probe set
    teachers           several teachers: their table rows and twin comparisons

The statistics and the verdicts the pages write beside the figures are in the engine: distill_core.stats and
distill_core.verdicts.
"""
