// Streamward dashboard behaviour: menus, dialogs, copy buttons, role previews. No inline script
// anywhere (the CSP forbids it): everything hangs off data- attributes.
"use strict";

function closeMenus(except) {
  document.querySelectorAll("[data-menu-button]").forEach((button) => {
    const menu = document.getElementById(button.getAttribute("aria-controls"));
    if (menu && menu !== except) {
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
    }
  });
}

document.querySelectorAll("[data-menu-button]").forEach((button) => {
  const menu = document.getElementById(button.getAttribute("aria-controls"));
  if (!menu) return;
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    const open = menu.hidden;
    closeMenus(menu);
    menu.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) {
      const first = menu.querySelector("a, button");
      if (first) first.focus();
    }
  });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
});
document.addEventListener("click", (event) => {
  if (!event.target.closest(".menu")) closeMenus(null);
});

// Dialogs: native <dialog> gives focus trapping and Escape; we return focus to the opener.
document.querySelectorAll("[data-dialog-open]").forEach((opener) => {
  opener.addEventListener("click", () => {
    const dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
    if (!dialog) return;
    dialog.returnFocusTo = opener;
    dialog.showModal();
    const focus = dialog.querySelector("[autofocus]") || dialog.querySelector("input, select, button");
    if (focus) focus.focus();
  });
});
document.querySelectorAll("dialog").forEach((dialog) => {
  dialog.addEventListener("close", () => {
    if (dialog.returnFocusTo) dialog.returnFocusTo.focus();
  });
  dialog.querySelectorAll("[data-dialog-close]").forEach((button) => {
    button.addEventListener("click", () => dialog.close());
  });
});

// Copy buttons copy the value of the element they name.
document.querySelectorAll("[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    const value = source.value !== undefined ? source.value : source.textContent;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(value);
      button.textContent = "Copied";
    } catch (error) {
      source.select && source.select();
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = label; }, 1600);
  });
});

// Role selects show the chosen role's permission overview (data rendered into the page as JSON).
document.querySelectorAll("[data-role-preview]").forEach((select) => {
  const target = document.getElementById(select.getAttribute("data-role-preview"));
  const data = document.getElementById("role-data");
  if (!target || !data) return;
  const roles = JSON.parse(data.textContent);
  const render = () => {
    const role = roles[select.value];
    target.replaceChildren();
    if (!role) return;
    const title = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = role.title;
    title.append(strong, document.createTextNode(" — " + role.description));
    const audiences = document.createElement("p");
    audiences.className = "muted small";
    audiences.textContent = "Audiences: " + (role.audiences.join(", ") || "none");
    const list = document.createElement("ul");
    list.className = "perm-list";
    role.permissions.forEach((label) => {
      const item = document.createElement("li");
      item.textContent = label;
      list.append(item);
    });
    target.append(title, audiences, list);
  };
  select.addEventListener("change", render);
  render();
});

// Auto-submit controls (the VOD switch) submit their form when changed.
document.querySelectorAll("[data-autosubmit]").forEach((control) => {
  control.addEventListener("change", () => control.form && control.form.requestSubmit());
});
