"""The demo project: synthetic echo clips written as DICOM files, with labels."""
