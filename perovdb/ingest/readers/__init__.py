"""One reader per source format; each yields ``RawRecord``s (or ``InvalidRecord``s) and never writes."""

from perovdb.ingest.readers.composition_tables import is_composition_table, read_composition_table
from perovdb.ingest.readers.jarvis import is_id_prop_folder, read_id_prop_folder
from perovdb.ingest.readers.multifidelity import is_multifidelity_table, read_multifidelity_table
from perovdb.ingest.readers.structure_files import is_structure_file, read_structure_files, structure_files

__all__ = [
    "is_composition_table",
    "is_id_prop_folder",
    "is_multifidelity_table",
    "is_structure_file",
    "read_composition_table",
    "read_id_prop_folder",
    "read_multifidelity_table",
    "read_structure_files",
    "structure_files",
]
