"""The FC-CLIP network: CLIP backbone, pixel decoder, transformer decoder."""
from fcclip_core.modeling.build import build_empty_model, build_model, model_registry
from fcclip_core.modeling.classification import TextClassifier
from fcclip_core.modeling.fcclip import FCCLIP, FCCLIPOutput

__all__ = ["FCCLIP", "FCCLIPOutput", "TextClassifier", "build_empty_model", "build_model", "model_registry"]
