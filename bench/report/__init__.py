"""`python -m bench report`: reads the result files only (through the schema) and writes one
self-contained HTML page: the answer, the matrix, tables and figures."""
