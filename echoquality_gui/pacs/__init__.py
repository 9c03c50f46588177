"""The PACS dialog: import clips from a DICOMweb PACS."""
