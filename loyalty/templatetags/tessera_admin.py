"""Template tags of the back office's own pages."""

from django import template

from loyalty.admin.index import index_sections

register = template.Library()


@register.simple_tag
def tessera_index_sections(app_list):
    """The index's parts: `{% tessera_index_sections app_list as sections %}`."""
    return index_sections(app_list)
