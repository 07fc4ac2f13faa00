from pathlib import Path

from django.core.files.base import ContentFile

from chunkfiles.models import File

f = File.objects.create(name="hello.txt", type="example")
f.putfile(ContentFile(b"Hello, chunkfiles!\n" * 1000))
print(f.size, f.checksum)

with f.getfile() as fp:
    print(fp.read(19))

f.save_to("exported/hello.txt")
print(Path("exported/hello.txt").read_bytes() == b"Hello, chunkfiles!\n" * 1000)
