"""The add form: a file is created from an upload, never edited in place."""

from __future__ import annotations

from typing import Any

from django import forms

from ..models import File


class FileUploadForm(forms.ModelForm):  # type: ignore[type-arg]
    """The add form: an upload, stored with ``putfile``; content is never edited in place."""

    upload = forms.FileField(help_text="The file to store; its blobs are deduplicated.")
    content_type = forms.CharField(
        required=False,
        max_length=255,
        help_text="Content-Type header; guessed from the name when empty.",
    )

    class Meta:
        model = File
        fields = ("name", "type")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        self.fields["name"].help_text = "Defaults to the uploaded file's name."
        self.fields["name"].widget = forms.TextInput(attrs={"size": 60})
        self.fields["type"].initial = "upload"

    def clean_content_type(self) -> str:
        value: str = self.cleaned_data.get("content_type", "").strip()
        if value and any(c in value for c in "\r\n\0"):
            raise forms.ValidationError("A header value cannot contain line breaks.")
        return value
