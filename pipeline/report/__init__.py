"""Stage `report`: cell results -> tables -> figures -> one self-contained HTML page."""
