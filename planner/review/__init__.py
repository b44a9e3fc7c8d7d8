"""Review tools for generated reports: render them in a headless browser and check what a person would see."""
