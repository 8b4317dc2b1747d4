"""What a class name means in SNOMED CT: the codes DICOM SEG and 3D Slicer store.

A DICOM Segmentation describes each segment by a *category* and a *type* code
(DICOM CID 7150/7151), and 3D Slicer keeps the same pair in its segments'
``TerminologyEntry`` tag. :func:`structure_code` recognises the usual names of
organs, tissues and lesions ("liver", "Right kidney", "kidney_left", "tumour",
"lesion", ...) and gives their codes; any other name gets the generic "Tissue" /
"Tissue" (SCT 85756007), as 3D Slicer does for a segment of unknown meaning.

Categories follow dcmqi and 3D Slicer's terminology lists: organs and structures are
"Anatomical Structure" (SCT 123037004), tissues such as bone, muscle and fat
"Tissue", lesions "Morphologically Altered Structure" (SCT 49755003). The type codes
are pydicom's SNOMED CT code dictionary entries. Laterality ("right", "left")
becomes a type modifier (SCT 24028007 Right, 7771000 Left).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: (code value, meaning) of the categories.
ANATOMICAL_STRUCTURE = ("123037004", "Anatomical Structure")
TISSUE = ("85756007", "Tissue")
ALTERED_STRUCTURE = ("49755003", "Morphologically Altered Structure")
#: (code value, meaning) of the laterality modifiers.
RIGHT = ("24028007", "Right")
LEFT = ("7771000", "Left")

#: Structure words (after normalising) -> (pydicom ``codes.SCT`` keyword, category).
_STRUCTURES: dict[str, tuple[str, tuple[str, str]]] = {
    "liver": ("Liver", ANATOMICAL_STRUCTURE),
    "spleen": ("Spleen", ANATOMICAL_STRUCTURE),
    "kidney": ("Kidney", ANATOMICAL_STRUCTURE),
    "lung": ("Lung", ANATOMICAL_STRUCTURE),
    "brain": ("Brain", ANATOMICAL_STRUCTURE),
    "heart": ("Heart", ANATOMICAL_STRUCTURE),
    "pancreas": ("Pancreas", ANATOMICAL_STRUCTURE),
    "stomach": ("Stomach", ANATOMICAL_STRUCTURE),
    "gallbladder": ("Gallbladder", ANATOMICAL_STRUCTURE),
    "gall bladder": ("Gallbladder", ANATOMICAL_STRUCTURE),
    "urinary bladder": ("Bladder", ANATOMICAL_STRUCTURE),
    "bladder": ("Bladder", ANATOMICAL_STRUCTURE),
    "prostate": ("Prostate", ANATOMICAL_STRUCTURE),
    "aorta": ("Aorta", ANATOMICAL_STRUCTURE),
    "esophagus": ("Esophagus", ANATOMICAL_STRUCTURE),
    "oesophagus": ("Esophagus", ANATOMICAL_STRUCTURE),
    "adrenal gland": ("AdrenalGland", ANATOMICAL_STRUCTURE),
    "adrenal": ("AdrenalGland", ANATOMICAL_STRUCTURE),
    "trachea": ("Trachea", ANATOMICAL_STRUCTURE),
    "colon": ("Colon", ANATOMICAL_STRUCTURE),
    "small intestine": ("SmallIntestine", ANATOMICAL_STRUCTURE),
    "small bowel": ("SmallIntestine", ANATOMICAL_STRUCTURE),
    "duodenum": ("Duodenum", ANATOMICAL_STRUCTURE),
    "rectum": ("Rectum", ANATOMICAL_STRUCTURE),
    "spinal cord": ("SpinalCord", ANATOMICAL_STRUCTURE),
    "vertebra": ("Vertebra", ANATOMICAL_STRUCTURE),
    "rib": ("Rib", ANATOMICAL_STRUCTURE),
    "femur": ("Femur", ANATOMICAL_STRUCTURE),
    "thyroid": ("Thyroid", ANATOMICAL_STRUCTURE),
    "thyroid gland": ("Thyroid", ANATOMICAL_STRUCTURE),
    "uterus": ("Uterus", ANATOMICAL_STRUCTURE),
    "breast": ("Breast", ANATOMICAL_STRUCTURE),
    "brainstem": ("BrainStem", ANATOMICAL_STRUCTURE),
    "brain stem": ("BrainStem", ANATOMICAL_STRUCTURE),
    "hippocampus": ("Hippocampus", ANATOMICAL_STRUCTURE),
    "cerebellum": ("Cerebellum", ANATOMICAL_STRUCTURE),
    "inferior vena cava": ("InferiorVenaCava", ANATOMICAL_STRUCTURE),
    "portal vein": ("PortalVein", ANATOMICAL_STRUCTURE),
    "parotid gland": ("ParotidGland", ANATOMICAL_STRUCTURE),
    "parotid": ("ParotidGland", ANATOMICAL_STRUCTURE),
    "mandible": ("Mandible", ANATOMICAL_STRUCTURE),
    "optic nerve": ("OpticNerve", ANATOMICAL_STRUCTURE),
    "eye": ("Eye", ANATOMICAL_STRUCTURE),
    "bone": ("Bone", TISSUE),
    "muscle": ("Muscle", TISSUE),
    "skin": ("Skin", TISSUE),
    "fat": ("Fat", TISSUE),
    "tumour": ("Neoplasm", ALTERED_STRUCTURE),
    "tumor": ("Neoplasm", ALTERED_STRUCTURE),
    "neoplasm": ("Neoplasm", ALTERED_STRUCTURE),
    "metastasis": ("Metastasis", ALTERED_STRUCTURE),
    "lesion": ("Lesion", ALTERED_STRUCTURE),
    "mass": ("Mass", ALTERED_STRUCTURE),
    "nodule": ("Nodule", ALTERED_STRUCTURE),
    "cyst": ("Cyst", ALTERED_STRUCTURE),
    "edema": ("Edema", ALTERED_STRUCTURE),
    "oedema": ("Edema", ALTERED_STRUCTURE),
    "necrosis": ("Necrosis", ALTERED_STRUCTURE),
    "hemorrhage": ("Hemorrhage", ALTERED_STRUCTURE),
    "haemorrhage": ("Hemorrhage", ALTERED_STRUCTURE),
    "pleural effusion": ("PleuralEffusion", ALTERED_STRUCTURE),
}
#: Words that mark a lesion whatever organ the name also holds ("liver tumour").
_LESION_WORDS = ("tumour", "tumor", "neoplasm", "metastasis", "lesion", "nodule", "cyst")


@dataclass(frozen=True)
class StructureCode:
    """SNOMED CT codes of a segment: ``(code value, meaning)`` pairs.

    Attributes
    ----------
    category, type : tuple of str
        Segmented property category and type.
    modifier : tuple of str or None
        Type modifier (laterality), when the name says right or left.
    known : bool
        Whether the name was recognised (False: the generic Tissue / Tissue).
    """

    category: tuple[str, str]
    type: tuple[str, str]
    modifier: tuple[str, str] | None = None
    known: bool = True


def _normalise(name: str) -> str:
    text = re.sub(r"[_\-./]+", " ", str(name).lower())
    return " ".join(text.split())


def structure_code(name: str) -> StructureCode:
    """The SNOMED CT category, type and laterality of a class name.

    Parameters
    ----------
    name : str
        A class name as users and models write it: "liver", "Right kidney",
        "kidney_left", "Left-Lung", "liver tumour".

    Returns
    -------
    StructureCode
        ``known`` is False (and the codes Tissue / Tissue) for a name that is not
        recognised.
    """
    from pydicom.sr.codedict import codes

    words = _normalise(name)
    modifier = None
    for side, code in (("right", RIGHT), ("left", LEFT)):
        if re.search(rf"\b{side}\b", words):
            modifier = code
            words = " ".join(re.sub(rf"\b{side}\b", " ", words).split())
    lesion = next((w for w in _LESION_WORDS if re.search(rf"\b{w}s?\b", words)), None)
    key = lesion or words
    if key not in _STRUCTURES:  # a plural, e.g. "kidneys", "ribs"
        key = key[:-1] if key.endswith("s") and key[:-1] in _STRUCTURES else key
    if key not in _STRUCTURES:
        return StructureCode(TISSUE, TISSUE, None, known=False)
    keyword, category = _STRUCTURES[key]
    code = getattr(codes.SCT, keyword)
    return StructureCode(category, (str(code.value), str(code.meaning)), modifier)


__all__ = [
    "ALTERED_STRUCTURE",
    "ANATOMICAL_STRUCTURE",
    "LEFT",
    "RIGHT",
    "TISSUE",
    "StructureCode",
    "structure_code",
]
