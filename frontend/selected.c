/* The selected-mailbox state: allocation and release only; commands fill it in. */
#include "frontend/selected.h"

#include <stdlib.h>

struct selected *selected_new(void)
{
    struct selected *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->view = view_new();
    return s;
}

void selected_free(struct selected **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    struct selected *s = *sp;
    free(s->name);
    free(s->keywords);
    view_free(&s->view);
    arena_free(&s->upd_arena);
    free(s);
    *sp = NULL;
}
