"""Page/per_page query parameters and the ``pagination`` object every list returns."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Query
from pydantic import BaseModel


class Pagination(BaseModel):
    page: int
    pages: int
    per_page: int
    total: int
    has_next: bool
    has_prev: bool


class PageParams(BaseModel):
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def result(self, total: int) -> Pagination:
        pages = max(1, math.ceil(total / self.per_page)) if total else 0
        return Pagination(
            page=self.page,
            pages=pages,
            per_page=self.per_page,
            total=total,
            has_next=self.page < pages,
            has_prev=self.page > 1,
        )


async def _page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    per_page: Annotated[int, Query(ge=1, le=100, description="items per page")] = 20,
) -> PageParams:
    return PageParams(page=page, per_page=per_page)


PageDep = Annotated[PageParams, Depends(_page_params)]
