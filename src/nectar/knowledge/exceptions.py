from nectar.errors import NectarError, NotFound


class JarNotFound(NotFound):
    code = "honey_jar_not_found"

    def __init__(self, jar_id: object | None = None) -> None:
        super().__init__(f"honey jar {jar_id} not found" if jar_id else "honey jar not found")


class DocumentNotFound(NotFound):
    code = "document_not_found"

    def __init__(self) -> None:
        super().__init__("document not found")


class UnsupportedDocument(NectarError):
    code = "unsupported_document"
    status = 415


class ImportOwnerNotFound(NotFound):
    code = "user_not_found"


class AmbiguousJarName(NectarError):
    code = "ambiguous_honey_jar"
    status = 409
