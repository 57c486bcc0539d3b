"""The FC-CLIP network: CLIP backbone, pixel decoder, transformer decoder."""
