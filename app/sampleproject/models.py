"""The sample project's one model: a record of each media upload."""

from django.db import models


class Upload(models.Model):
    """A file stored on the shared media root, and the worker that accepted it."""

    file = models.FileField(upload_to="uploads/")
    worker = models.CharField(max_length=100)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.file.name
