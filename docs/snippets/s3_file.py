from django.core.files.base import ContentFile

from chunkfiles.models import File, FileBlob

f = File.objects.create(name="hello-s3.txt", type="example")
f.putfile(ContentFile(b"Hello, bucket!\n" * 1000))

with f.getfile() as fp:
    print(fp.read(15))

print(FileBlob.objects.in_storage("s3").count(), "blob(s) in the bucket")
