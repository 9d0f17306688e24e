"""Run folders and what is read from them: the folder, training history plots, interpretation, pictures, report.html."""
