"""A URLconf with chunkfiles registered on a custom AdminSite, for test_admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from chunkfiles.admin import FileAdmin, FileBlobAdmin
from chunkfiles.models import File, FileBlob

site = admin.AdminSite(name="ops")
site.register(File, FileAdmin)
site.register(FileBlob, FileBlobAdmin)

urlpatterns = [path("ops/", site.urls)]
