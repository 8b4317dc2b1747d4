"""Label maps and what is done to them by hand: value rules (:mod:`.maps`), class names
and colours (:mod:`.classes`), connected components (:mod:`.components`) and the label
tools (:mod:`.editing`). Pure numpy/scipy: no napari, no torch."""
